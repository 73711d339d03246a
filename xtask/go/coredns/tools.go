//go:build tools

// Package tools pins CoreDNS, the test environment's cluster DNS, built from this module.
package tools

import (
	_ "github.com/coredns/coredns"
)
