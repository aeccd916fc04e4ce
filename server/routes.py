"""The lab's own HTTP routes, as paths only: the server registers its views under them (labserver/views.py), and
the client imports them from here instead of retyping them."""

REGISTER_RUN = "/api/2.0/lab/runs/register"
WHOAMI = "/api/2.0/lab/whoami"
LEADERBOARD_API = "/api/2.0/lab/leaderboard"
LEADERBOARD_PAGE = "/lab/leaderboard"
