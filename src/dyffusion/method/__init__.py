"""DYffusion itself (the paper's method), to be read in one sitting: the step schedule, the interpolator and the
forecaster with their objectives, the sampler, the ensemble pipeline and the two training stages."""
