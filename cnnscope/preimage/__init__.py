"""Pre-images: one optimiser, many tasks (Mahendran & Vedaldi, CVPR'15 / IJCV'16).

    min_theta  data_weight * data_term(Phi(T(x(theta))))  +  prior(x(theta))

x(theta) is an image parametrisation (`param/`), T a random robustness transform (`robustness`); a
`recipes.Recipe` picks them with the optimiser and prior. Inversion, activation maximisation, caricatures
and accentuation differ only in the data term; see `tasks`. `quality` scores the pictures.
"""

from ..lazy import exports

__getattr__, __all__ = exports(__name__, {
    ".objectives": "B B_PLUS TV AlphaNorm Caricature Context Diversity InnerProduct Objective Representation Term V "
                   "unit_direction",
    ".param": "ColourParam FourierParam MacoParam Parametrization PixelParam",
    ".recipes": "RECIPES Recipe get_recipe",
    ".solver": "ImageSpace PreimageResult SolverConfig solve",
    ".tasks": "Prior Target accentuate ambiguity caricature invert maximize reconstruction_error response",
})
