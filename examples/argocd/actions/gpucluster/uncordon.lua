-- Uncordon, and drop a pending evacuation request (else the next cordon would evacuate at once).
obj.spec.cordoned = false
if obj.metadata.annotations ~= nil then
  obj.metadata.annotations["tenbin.io/evacuate"] = nil
end
return obj
