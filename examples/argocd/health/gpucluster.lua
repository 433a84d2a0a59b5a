-- Argo CD health of a tenbin.io/v1alpha1 GPUCluster (argocd-cm: resource.customizations.health.tenbin.io_GPUCluster).
--   Healthy      status.phase Ready: Tenbin reaches the member and reads its GPU inventory
--   Progressing  not observed yet (no status, or phase Unknown), or being deleted
--   Suspended    spec.cordoned: running work stays, no new placements (an operator's deliberate pause)
--   Degraded     status.phase NotReady: unreachable, or an invalid spec (the message says which)
-- A NotReady cluster is Degraded even when cordoned: the work on it may be at risk.
hs = {}

local function say(health, message)
  hs.status = health
  hs.message = message
  return hs
end

local function ready_condition(status)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == "Ready" then
      return c
    end
  end
  return nil
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  return say("Progressing", "Being deleted")
end

local status = obj.status or {}
local phase = status.phase
if phase == nil then
  local ready = ready_condition(status)
  if ready ~= nil and ready.status == "True" then
    phase = "Ready"
  elseif ready ~= nil and ready.status == "False" then
    phase = "NotReady"
  end
end

if phase == "NotReady" then
  return say("Degraded", status.message or "The member cluster is not ready")
end
if obj.spec ~= nil and obj.spec.cordoned == true then
  return say("Suspended", "Cordoned: running work stays, no new placements")
end
if phase == "Ready" then
  local free = ""
  if status.freeGPUs ~= nil then
    free = tostring(status.freeGPUs) .. " free GPUs; "
  end
  return say("Healthy", free .. (status.message or "ready"))
end
return say("Progressing", "Waiting for Tenbin to observe the member cluster")
