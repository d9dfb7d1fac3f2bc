"""Plain helpers the pages share (no streamlit import): lesson list and URL-safe values."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    title: str
    text: str
    page: str  # "live", "surface", "spectral", "opposing" or "eos"
    params: dict


LESSONS = [
    Lesson("Watch a network train on its landscape",
           "An MLP learns the digits; its path is drawn on the loss surface spanned by the "
           "trajectory's two principal directions.", "live",
           {"preset": "digits-mlp", "live_dirs": "pca"}),
    Lesson("Two moons, step by step",
           "A small tanh network separates two moons: press Step and watch one update at a time.",
           "live", {"preset": "moons-mlp", "live_dirs": "pca", "speed": 20}),
    Lesson("Why random directions miss the path",
           "The same run on a random filter-normalized plane: the trajectory barely moves, "
           "because random directions are nearly orthogonal to it.", "live",
           {"preset": "digits-mlp", "live_dirs": "random"}),
    Lesson("Skip connections smooth the landscape",
           "Li et al.'s headline: the same deep CNN with and without skip connections, side by "
           "side on one colour scale.", "surface",
           {"view": "Compare", "preset": "digits-resnet-skip", "preset_b": "digits-resnet-noskip",
            "grid": 15, "samples": "200", "log": "true"}),
    Lesson("A minimum up close",
           "A filter-normalized 2-D slice around a trained MLP, as a contour and in 3-D.",
           "surface", {"view": "2-D", "preset": "digits-mlp", "grid": 31}),
    Lesson("The edge-of-stability network",
           "A tanh MLP trained by full-batch GD at eta = 0.2 with the squared loss; its PCA "
           "surface.", "surface", {"view": "2-D", "preset": "eos-tanh", "dirs": "pca", "log": "true"}),
    Lesson("Sharpness rises to 2/η and stays there",
           "Full-batch gradient descent on a tanh network: the top Hessian eigenvalue climbs to "
           "the stability limit 2/η and hovers at the edge while the loss keeps falling, "
           "unevenly.", "eos", {}),
    Lesson("Low frequencies first",
           "A coordinate MLP fits ten sines: the low ones are learned first (spectral bias), "
           "until a Fourier-feature encoding removes the lag.", "spectral", {}),
    Lesson("Examples that pull against each other",
           "A bright patch planted on some 3s and 8s: at the edge of stability the two groups' "
           "losses swing in anti-phase, found without labels.", "opposing", {}),
    Lesson("Bring your own model",
           "Upload a torch.export program, a state_dict or a safetensors file and see its "
           "surface, its Hessian spectrum and its worst-fit examples.", "inspect", {}),
]
