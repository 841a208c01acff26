"""Pre-images: one optimiser, many tasks (Mahendran & Vedaldi, CVPR'15 / IJCV'16).

    min_theta  data_weight * data_term(Phi(T(x(theta))))  +  prior(x(theta))

x(theta) is an image parametrisation (`param/`), T a random robustness transform (`robustness`); a
`recipes.Recipe` picks them with the optimiser and prior. Inversion, activation maximisation, caricatures
and accentuation differ only in the data term; see `tasks`. `quality` scores the pictures.
"""

from .objectives import (
    B_PLUS,
    TV,
    AlphaNorm,
    B,
    Caricature,
    Context,
    Diversity,
    InnerProduct,
    Objective,
    Representation,
    Term,
    V,
    unit_direction,
)
from .param import ColourParam, FourierParam, MacoParam, Parametrization, PixelParam
from .recipes import RECIPES, Recipe, get_recipe
from .solver import ImageSpace, PreimageResult, SolverConfig, solve
from .tasks import (
    Prior,
    Target,
    accentuate,
    ambiguity,
    caricature,
    invert,
    maximize,
    reconstruction_error,
    response,
)

__all__ = [
    "B", "B_PLUS", "RECIPES", "V", "AlphaNorm", "Caricature", "ColourParam", "Context", "Diversity", "FourierParam",
    "ImageSpace", "InnerProduct", "MacoParam", "Objective", "Parametrization", "PixelParam", "PreimageResult",
    "Prior", "Recipe", "Representation", "SolverConfig", "TV", "Target", "Term", "accentuate", "ambiguity",
    "caricature", "get_recipe", "invert", "maximize", "reconstruction_error", "response", "solve",
    "unit_direction",
]
