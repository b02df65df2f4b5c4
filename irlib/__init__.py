"""irlib: executable incident-response runbooks for a trading platform on Kubernetes."""

from irlib.errors import IrlibError, LabError, LabNotRunning, ProfileError, UsageError
from irlib.profile import Profile, load_profile

__version__ = "0.1.0"

__all__ = [
    "IrlibError",
    "LabError",
    "LabNotRunning",
    "Profile",
    "ProfileError",
    "UsageError",
    "__version__",
    "load_profile",
]
