"""One LightningDataModule per dataset family, their shared in-memory base and their DataLoaders."""
