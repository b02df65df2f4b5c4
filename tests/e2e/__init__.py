"""irlib end to end as its users run it: notebooks under papermill and nbval, the drills, an
incident through the CLI, JupyterLab in chromium, the installed wheel."""
