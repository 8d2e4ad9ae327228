"""Helpers of tools/peer_compare.py: process plumbing (common), the dataset (dataset), wire
clients and the multi-process load runner (wire, runner), and one module per system
(banyan, redis_streams, postgres, sqlite)."""
