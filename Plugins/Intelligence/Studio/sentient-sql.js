// The sentient-sql page of the Studio (filled in by its part).
