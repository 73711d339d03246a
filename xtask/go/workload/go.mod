module seal.dev/xtask/go/workload

go 1.26.0
