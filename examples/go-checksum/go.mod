module hotmod.dev/examples/go-checksum

go 1.19

require hotmod.dev/sdk/go v0.0.0

replace hotmod.dev/sdk/go => ../../sdk/go
