-- Argo CD actions of a tenbin.io/v1alpha1 AIWorkload (argocd-cm: resource.customizations.actions.tenbin.io_AIWorkload).
--   re-place  ask Tenbin to place it again (annotation tenbin.io/replace set to the current UTC time: a new
--             value is a new request, the annotation stays). Enabled while it is placed, not finished, not
--             being deleted, and no move is under way.
actions = {}

local status = obj.status or {}
local moving = {Pending = true, Checkpointing = true, StartingTarget = true, StoppingSource = true}
local placed = status.placement ~= nil and status.placement.cluster ~= nil
local finished = status.phase == "Succeeded" or status.phase == "Failed"
local deleting = obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil
local migrating = status.migration ~= nil and moving[status.migration.phase] == true

actions["re-place"] = {
  ["displayName"] = "Re-place",
  ["iconClass"] = "fa fa-fw fa-random",
  ["disabled"] = not placed or finished or deleting or migrating,
}
return actions
