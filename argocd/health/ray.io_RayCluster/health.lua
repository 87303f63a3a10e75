-- Argo CD health of a KubeRay RayCluster (Lua 5.1, as Argo CD's gopher-lua runs it). A RayService owns its
-- RayClusters: this is the health Argo CD shows for them in the resource tree.
-- Healthy: head Pod ready and every Pod provisioned. Degraded: Pods fail to be created or the cluster failed.
-- Suspended: spec.suspend and every Pod deleted. Fields: ray-operator/apis/ray/v1/raycluster_types.go.
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

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for KubeRay to report the RayCluster status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for KubeRay to observe generation " .. tostring(generation)
  return hs
end

local suspended = condition(status, "RayClusterSuspended")
if (suspended ~= nil and suspended.status == "True") or status.state == "suspended" then
  hs.status = "Suspended"
  hs.message = "RayCluster is suspended"
  return hs
end
local suspending = condition(status, "RayClusterSuspending")
if suspending ~= nil and suspending.status == "True" then
  hs.status = "Progressing"
  hs.message = "Suspending: deleting the Ray Pods"
  return hs
end

local failure = condition(status, "ReplicaFailure")
if failure ~= nil and failure.status == "True" then
  hs.status = "Degraded"
  hs.message = tostring(failure.reason) .. ": " .. (failure.message or "")
  return hs
end
if status.state == "failed" then
  hs.status = "Degraded"
  hs.message = "RayCluster failed: " .. (status.reason or "")
  return hs
end

local workers = tostring(status.readyWorkerReplicas or 0) .. "/" .. tostring(status.desiredWorkerReplicas or 0) ..
    " worker Pod(s) ready"
local head = condition(status, "HeadPodReady")
local provisioned = condition(status, "RayClusterProvisioned")
if head == nil then
  -- Status conditions off (feature gate RayClusterStatusConditions): the deprecated state only.
  if status.state == "ready" then
    hs.status = "Healthy"
    hs.message = "RayCluster is ready; " .. workers
  else
    hs.status = "Progressing"
    hs.message = "Waiting for the RayCluster to be ready"
  end
  return hs
end
if head.status ~= "True" then
  hs.status = "Progressing"
  hs.message = "Head Pod not ready: " .. (head.message or tostring(head.reason))
  return hs
end
if provisioned ~= nil and provisioned.status ~= "True" then
  hs.status = "Progressing"
  hs.message = "Provisioning: " .. (provisioned.message or tostring(provisioned.reason)) .. "; " .. workers
  return hs
end
hs.status = "Healthy"
hs.message = "Head Pod ready; " .. workers
return hs
