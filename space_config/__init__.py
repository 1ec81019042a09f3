"""Single home of every setting: model ids and revisions, dataset ids, ranking constants.

Everything tunable is read from here once; the library, the app, the CLI and training import it and never
hard-code these values themselves.
"""

from space_config.settings import SETTINGS, ModelSpec, Settings

__all__ = ["SETTINGS", "ModelSpec", "Settings"]
