-- Argo CD health of a tenbin.io/v1alpha1 AIWorkload (argocd-cm: resource.customizations.health.tenbin.io_AIWorkload).
--   Healthy      Running, or Succeeded
--   Progressing  not placed yet, Pending, Scheduled (placed, pods starting), Migrating, being deleted,
--                Tenbin has not yet looked at the current spec (status.observedGeneration < generation), or
--                Unschedulable while it waits for room (or a ready member, or one serving its kind)
--   Degraded     Failed, an invalid spec (condition Valid=False), the spec no longer fits the current
--                placement (condition PlacementConflict=True), or Unschedulable because no cluster can ever
--                take it as written (Scheduled=False NoClusterCanFit: residency, selector or GPU model
--                rule every one out; an edit is needed, not capacity)
hs = {}

local function condition(status, type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function say(health, message)
  hs.status = health
  hs.message = message
  return hs
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  return say("Progressing", "Being deleted: Tenbin removes the workload from its member cluster first")
end

local status = obj.status
if status == nil or status.phase == nil then
  return say("Progressing", "Waiting for Tenbin to place the workload")
end
local phase = status.phase
local message = status.message or phase

local valid = condition(status, "Valid")
if valid ~= nil and valid.status == "False" then
  return say("Degraded", valid.message or message)
end
if phase == "Failed" then
  return say("Degraded", message)
end
if phase == "Succeeded" then
  return say("Healthy", message)
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  return say("Progressing", "Waiting for Tenbin to observe generation " .. tostring(generation))
end

local conflict = condition(status, "PlacementConflict")
if conflict ~= nil and conflict.status == "True" then
  return say("Degraded", conflict.message or "The spec no longer fits the current placement")
end

if phase == "Running" then
  return say("Healthy", message)
end
if phase == "Pending" or phase == "Scheduled" or phase == "Migrating" then
  return say("Progressing", message)
end
if phase == "Unschedulable" then
  local scheduled = condition(status, "Scheduled")
  if scheduled ~= nil and scheduled.reason == "NoClusterCanFit" then
    return say("Degraded", message)
  end
  return say("Progressing", "Waiting for capacity: " .. message)
end
return say("Unknown", "Unknown phase " .. tostring(phase) .. ": " .. message)
