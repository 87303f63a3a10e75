-- Argo CD health of a KubeRay RayService (Lua 5.1, as Argo CD's gopher-lua runs it).
-- Healthy: Ready=True, status.observedGeneration current, every Serve application RUNNING.
-- Progressing: initializing, upgrading (UpgradeInProgress, a pending cluster), rolling back an upgrade
-- (RollbackInProgress) or applications deploying.
-- Degraded: an application DEPLOY_FAILED or UNHEALTHY, Ready=False/InitializingTimeout, an invalid spec,
-- or no serve endpoint left after the service was up. Suspended: the RayService is suspended.
-- Fields: ray-operator/apis/ray/v1/rayservice_types.go of KubeRay v1.6.2. Suspended/Suspending are KubeRay
-- v1.7 conditions (the pinned v1.6.2 never sets them): handled so the check stays right after a bump.
-- A point-in-time verdict: UNHEALTHY is Degraded at once and Healthy again when Serve recovers; the
-- harness's `wait` fails only after KUBERAY_LLM_UNHEALTHY_GRACE (30s), since it must decide once. Healthy
-- needs every application RUNNING, not every deployment HEALTHY: RUNNING is "all deployments are healthy or
-- autoscaling" (Ray 2.60 serve/_private/application_state.py): a deployment UPSCALING or DOWNSCALING still
-- serves, which `wait` (it waits for a settled start) does not accept.
-- Right after a serve-config change KubeRay writes the new observedGeneration with the application statuses
-- Ray gave before the submission (the old config RUNNING): this check says Healthy for that one status, and
-- Progressing from KubeRay's next read 2 s later. `wait` holds it back by the UpdatedServeApplications event,
-- which a health check cannot see (it gets the object alone, and has no clock for a settle period).
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function sorted_keys(t)
  local keys = {}
  if t == nil then
    return keys
  end
  for k, _ in pairs(t) do
    table.insert(keys, k)
  end
  table.sort(keys)
  return keys
end

-- The first failed application of a service status (active or pending), with Ray's message.
local function failed_application(service)
  if service == nil or service.applicationStatuses == nil then
    return nil
  end
  for _, name in ipairs(sorted_keys(service.applicationStatuses)) do
    local app = service.applicationStatuses[name]
    if app.status == "DEPLOY_FAILED" or app.status == "UNHEALTHY" then
      local detail = app.message
      if detail == nil or detail == "" then
        -- Serve puts the cause on the deployment when the application has no message of its own.
        for _, dep in ipairs(sorted_keys(app.serveDeploymentStatuses)) do
          local d = app.serveDeploymentStatuses[dep]
          if d.status == "UNHEALTHY" and d.message ~= nil and d.message ~= "" then
            detail = "deployment " .. dep .. ": " .. d.message
            break
          end
        end
      end
      local msg = "Serve application " .. name .. " is " .. app.status
      if detail ~= nil and detail ~= "" then
        msg = msg .. ": " .. detail
      end
      return msg
    end
  end
  return nil
end

-- Applications that are not RUNNING yet, e.g. "llm_app DEPLOYING".
local function not_running(service)
  local pending = {}
  for _, name in ipairs(sorted_keys(service.applicationStatuses)) do
    local app = service.applicationStatuses[name]
    if app.status ~= "RUNNING" then
      table.insert(pending, name .. " " .. tostring(app.status or "NOT_STARTED"))
    end
  end
  return pending
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for KubeRay to report the RayService status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for KubeRay to observe generation " .. tostring(generation)
  return hs
end

local suspended = condition(status, "Suspended")
if suspended ~= nil and suspended.status == "True" then
  hs.status = "Suspended"
  hs.message = suspended.message or "RayService is suspended"
  return hs
end
local suspending = condition(status, "Suspending")
if suspending ~= nil and suspending.status == "True" then
  hs.status = "Progressing"
  hs.message = suspending.message or "RayService is suspending"
  return hs
end

local failure = failed_application(status.activeServiceStatus)
if failure ~= nil then
  hs.status = "Degraded"
  hs.message = failure
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "False" and
    (ready.reason == "InitializingTimeout" or ready.reason == "ValidationFailed") then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end

local pending_failure = failed_application(status.pendingServiceStatus)
if pending_failure ~= nil then
  hs.status = "Degraded"
  hs.message = "Upgrade: " .. pending_failure
  return hs
end

-- NewClusterWithIncrementalUpgrade: the spec changed mid-upgrade and KubeRay moves the traffic back first.
local rollback = condition(status, "RollbackInProgress")
if rollback ~= nil and rollback.status == "True" then
  hs.status = "Progressing"
  hs.message = "Rolling back: " .. (rollback.message or tostring(rollback.reason))
  return hs
end

local upgrading = condition(status, "UpgradeInProgress")
if upgrading ~= nil and upgrading.status == "True" then
  hs.status = "Progressing"
  hs.message = "Upgrade in progress: " .. (upgrading.message or "")
  return hs
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

local pending_cluster = status.pendingServiceStatus and status.pendingServiceStatus.rayClusterName
if ready.status == "False" and ready.reason == "Initializing" then
  hs.status = "Progressing"
  hs.message = "Initializing: " .. (ready.message or "")
  if pending_cluster ~= nil and pending_cluster ~= "" then
    hs.message = hs.message .. " (RayCluster " .. pending_cluster .. ")"
  end
  return hs
end

if pending_cluster ~= nil and pending_cluster ~= "" then
  hs.status = "Progressing"
  hs.message = "Upgrading to RayCluster " .. pending_cluster
  return hs
end

if ready.status == "True" then
  local active = status.activeServiceStatus
  if active == nil or active.applicationStatuses == nil or next(active.applicationStatuses) == nil then
    hs.status = "Progressing"
    hs.message = "Waiting for Serve to report its applications"
    return hs
  end
  local waiting = not_running(active)
  if #waiting > 0 then
    hs.status = "Progressing"
    hs.message = "Serve applications not RUNNING yet: " .. table.concat(waiting, ", ")
    return hs
  end
  hs.status = "Healthy"
  hs.message = "Serving: " .. tostring(#sorted_keys(active.applicationStatuses)) ..
      " application(s) RUNNING, " .. tostring(status.numServeEndpoints or 0) .. " serve endpoint(s)"
  return hs
end

-- Ready=False after initialization (ZeroServeEndpoints): the service was up and has no endpoint left.
hs.status = "Degraded"
hs.message = tostring(ready.reason) .. ": " .. (ready.message or "")
return hs
