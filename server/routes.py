"""The lab's own HTTP routes, as paths only: the server registers its views under them (labserver/views.py), and
the client imports them from here instead of retyping them."""

REGISTER_RUN = "/api/2.0/lab/runs/register"
WHOAMI = "/api/2.0/lab/whoami"
LEADERBOARD_API = "/api/2.0/lab/leaderboard"
LEADERBOARD_PAGE = "/lab/leaderboard"

# chunked artifact uploads, under any proxy's body limit (labserver/uploads.py)
UPLOAD_CREATE = "/api/2.0/lab/uploads/create"
UPLOAD_CHUNK = "/api/2.0/lab/uploads/chunk"
UPLOAD_COMPLETE = "/api/2.0/lab/uploads/complete"

UI_LAYOUT = "workflowType=machine_learning"  # links open MLflow's "Model training" layout, not the GenAI one
