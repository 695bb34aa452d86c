"""The data wing: survey-independent storage, mock galaxies, importers, noise and pipelines."""
