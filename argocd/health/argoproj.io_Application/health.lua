-- Argo CD health of an Argo CD Application, so the root app-of-apps waits on each child Application before
-- its next sync wave (Argo CD stopped assessing Application health itself in v1.8).
-- Argo CD calls an Application whose manifests cannot be generated (a Helm repository out of reach, a bad
-- path) Healthy: it has no resources, so nothing is unhealthy. For a sync wave that is a failure, not a go:
-- Degraded with Argo CD's error, so the root's sync fails and retries instead of starting the next wave.
-- A child that is Healthy but not Synced yet has not applied its manifests: Progressing.
local hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status == nil then
  return hs
end
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "ComparisonError" or c.type == "InvalidSpecError" then
      hs.status = "Degraded"
      hs.message = c.type .. ": " .. (c.message or "")
      return hs
    end
  end
end
if obj.status.health ~= nil then
  hs.status = obj.status.health.status
  if obj.status.health.message ~= nil then
    hs.message = obj.status.health.message
  end
end
local sync = obj.status.sync and obj.status.sync.status
if hs.status == "Healthy" and sync ~= "Synced" then
  hs.status = "Progressing"
  hs.message = "Healthy but " .. tostring(sync or "not compared yet") .. ": waiting for the sync"
end
return hs
