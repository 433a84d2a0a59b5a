obj.spec.cordoned = true
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["tenbin.io/evacuate"] = "true"
return obj
