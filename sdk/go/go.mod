module hotmod.dev/sdk/go

go 1.19
