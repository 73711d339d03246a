//! seal-agent run as the real binary against the test environment's OpenBao and moto.
