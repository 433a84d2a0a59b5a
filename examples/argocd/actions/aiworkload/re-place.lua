-- Ask Tenbin to place the AIWorkload again now: the time is the request's value, so two clicks a second
-- apart are two requests, and a double click within one second is one.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["tenbin.io/replace"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
