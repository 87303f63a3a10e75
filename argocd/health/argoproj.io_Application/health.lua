-- Argo CD health of an Argo CD Application, so the root app-of-apps waits on each child Application's own
-- health before its next sync wave (Argo CD stopped assessing Application health itself in v1.8).
local hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil and obj.status.health ~= nil then
  hs.status = obj.status.health.status
  if obj.status.health.message ~= nil then
    hs.message = obj.status.health.message
  end
end
return hs
