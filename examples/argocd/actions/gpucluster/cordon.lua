obj.spec.cordoned = true
return obj
