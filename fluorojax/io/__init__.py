"""Clinical data in and out: CT series (DICOM, NRRD, MetaImage), X-ray images with their
geometry (DICOM XA/RF/DX/CR in and out, PNG/TIFF in), and TotalSegmentator's layouts
(``fluorojax.io.totalsegmentator``).

DICOM and NRRD need the ``dicom`` extra (``pip install "fluorojax[dicom]"``: pydicom, pynrrd);
a missing package raises one ImportError that names it.
"""

from fluorojax.io import totalsegmentator
from fluorojax.io.dicom_series import list_series, read_dicom_series, save_dicom_series
from fluorojax.io.images import read_image
from fluorojax.io.metaimage import read_metaimage
from fluorojax.io.nrrd import read_nrrd
from fluorojax.io.xray import XRay, load_xray, positioner_angles, positioner_pose, save_xray

__all__ = [
    "XRay",
    "list_series",
    "load_xray",
    "positioner_angles",
    "positioner_pose",
    "read_dicom_series",
    "read_image",
    "read_metaimage",
    "read_nrrd",
    "save_dicom_series",
    "save_xray",
    "totalsegmentator",
]
