"""ComfyUI nodes: thin adapters, each one call into mn_core."""

from .bridge import register_model_folder
from .finish import FinishPage, SaveLayers
from .inputs import validated
from .lineart import ExtractLineart
from .load import LoadMangaNinja
from .metrics import ColorizationMetrics
from .points import PointEditor
from .reference import ReferenceEncode
from .routes import register as register_routes
from .sampler import ColorizeSampler
from .suggest import SuggestPoints

register_model_folder()
register_routes()

NODE_CLASS_MAPPINGS = {
    "MangaNinjaLoader": LoadMangaNinja,
    "MangaNinjaExtractLineart": ExtractLineart,
    "MangaNinjaPointEditor": PointEditor,
    "MangaNinjaSuggestPoints": SuggestPoints,
    "MangaNinjaReferenceEncode": ReferenceEncode,
    "MangaNinjaColorizeSampler": ColorizeSampler,
    "MangaNinjaColorizationMetrics": ColorizationMetrics,
    "MangaNinjaFinishPage": FinishPage,
    "MangaNinjaSaveLayers": SaveLayers,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "MangaNinjaLoader": "Load MangaNinja",
    "MangaNinjaExtractLineart": "Extract Lineart",
    "MangaNinjaPointEditor": "Point Editor",
    "MangaNinjaSuggestPoints": "Suggest Points",
    "MangaNinjaReferenceEncode": "Reference Encode",
    "MangaNinjaColorizeSampler": "Colorize Sampler",
    "MangaNinjaColorizationMetrics": "Colorization Metrics",
    "MangaNinjaFinishPage": "Finish Page (full resolution)",
    "MangaNinjaSaveLayers": "Save Layers (PSD)",
}

for _name, _cls in NODE_CLASS_MAPPINGS.items():
    validated(_cls, NODE_DISPLAY_NAME_MAPPINGS[_name])  # every input checked against INPUT_TYPES first
