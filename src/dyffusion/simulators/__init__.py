"""The paper's physical systems, generated here (no download): the spring mesh, Navier-Stokes flow past obstacles
on the flow solver (checked against the Schafer-Turek benchmark) and synthetic sea-surface temperature. Each writes
split files of the data contract (:mod:`dyffusion.data.contract`)."""
