"""The scheduler: pending pods placed on nodes by filter and score plugins."""
