"""How a process uses the machine it runs on (its cores, Python's garbage collector) and what
a database failure was, for application and projections alike: both may import it, it
imports neither."""
