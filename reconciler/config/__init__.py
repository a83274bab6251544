"""The desired state and hardware profiles: models, loader, and the rules between fields."""
