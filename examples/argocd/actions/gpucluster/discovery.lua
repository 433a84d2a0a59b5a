-- Argo CD actions of a tenbin.io/v1alpha1 GPUCluster (argocd-cm: resource.customizations.actions.tenbin.io_GPUCluster).
--   cordon    spec.cordoned: true; running work stays, nothing new is placed there
--   uncordon  spec.cordoned: false, and a pending evacuation request removed
--   evacuate  cordon and annotate tenbin.io/evacuate: "true": Tenbin moves the work away (Evacuation)
--   fence     annotate tenbin.io/fenced: "true": you vouch that the work on an unreachable member is
--             stopped (powered off, nodes revoked), so run-once work may run elsewhere. Enabled only while
--             Tenbin reports the member Unreachable; Tenbin removes the annotation when it answers again.
-- spec.cordoned is a spec field: when the GPUCluster's manifest in Git sets it, selfHeal puts Git's value
-- back; leave it out of Git to cordon from here (or cordon in Git).
actions = {}

local annotations = (obj.metadata or {}).annotations or {}
local status = obj.status or {}
local cordoned = obj.spec ~= nil and obj.spec.cordoned == true
local evacuating = cordoned and annotations["tenbin.io/evacuate"] == "true"

local unreachable = false
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "Ready" and c.status == "False" and c.reason == "Unreachable" then
      unreachable = true
    end
  end
end

actions["cordon"] = {["iconClass"] = "fa fa-fw fa-pause", ["disabled"] = cordoned}
actions["uncordon"] = {["iconClass"] = "fa fa-fw fa-play", ["disabled"] = not cordoned}
actions["evacuate"] = {["iconClass"] = "fa fa-fw fa-sign-out", ["disabled"] = evacuating}
actions["fence"] = {
  ["iconClass"] = "fa fa-fw fa-ban",
  ["disabled"] = not unreachable or annotations["tenbin.io/fenced"] == "true",
}
return actions
