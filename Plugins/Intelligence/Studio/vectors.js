// The vectors page of the Studio (filled in by its part).
