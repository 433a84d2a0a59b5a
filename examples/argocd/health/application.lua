-- Argo CD health of an argoproj.io Application, as its own status reports it
-- (argocd-cm: resource.customizations.health.argoproj.io_Application). Argo CD stopped assessing child
-- Applications in 1.8; with this, the parent of tenbin-crds / tenbin-hub / tenbin-fleet waits for each sync
-- wave to be Healthy before the next one: the CRDs are established before anything uses them.
hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil and obj.status.health ~= nil and obj.status.health.status ~= nil then
  hs.status = obj.status.health.status
  hs.message = obj.status.health.message or ""
end
return hs
