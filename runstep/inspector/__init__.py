"""The web run inspector's assets: ``index.html`` and ``static/`` (plain CSS and JavaScript,
no build step, nothing fetched from elsewhere), served by ``runstep.api.inspector``."""
