"""Library code: data, schedules, logging and plotting. Never reads the command line."""
