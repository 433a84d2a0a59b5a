if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["tenbin.io/fenced"] = "true"
return obj
