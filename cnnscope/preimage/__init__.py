"""Pre-images: one optimiser, many tasks (Mahendran & Vedaldi, CVPR'15 / IJCV'16).

    min_x  data_weight * data_term(Phi(x))  +  lambda_beta R_TV^beta(x)  +  lambda_alpha R_alpha(x)

Inversion, activation maximisation and caricatures differ only in the data term; see `presets`.
"""

from .objectives import (
    B_PLUS,
    TV,
    AlphaNorm,
    B,
    Caricature,
    Context,
    InnerProduct,
    Objective,
    Representation,
    Term,
    V,
    unit_direction,
)
from .presets import Prior, Target, ambiguity, caricature, invert, maximize, reconstruction_error, response
from .solver import ImageSpace, PreimageResult, SolverConfig, solve

__all__ = [
    "B", "B_PLUS", "V", "AlphaNorm", "Caricature", "Context", "ImageSpace", "InnerProduct", "Objective",
    "PreimageResult", "Prior", "Representation", "SolverConfig", "TV", "Target", "Term", "ambiguity",
    "caricature", "invert", "maximize", "reconstruction_error", "response", "solve", "unit_direction",
]
