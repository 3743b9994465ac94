"""How the app is served: launch profile and headers, rate limits, request-size cap, remote endpoints."""
