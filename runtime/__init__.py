"""How a process uses the machine it runs on (its cores, Python's garbage collector), for
application and projections alike: both may import it, it imports neither."""
