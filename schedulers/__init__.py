"""Deployment picking, and (later) rate-limit budgets, cooldowns and fallbacks."""
