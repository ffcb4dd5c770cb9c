// The agents page of the Studio (filled in by its part).
