"""The local testbed: real Kubernetes control planes built from Go modules, run as plain processes.

`make testbed` builds the binaries (testbed/build.sh); this package runs them: `tenbin dev up/down`
and the pytest fixtures both use :class:`tenbin.testbed.fleet.Fleet`.
"""
