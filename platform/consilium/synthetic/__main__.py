"""``python -m consilium.synthetic OUT_DIR --slices 300 ...``: write one synthetic chest CT series
(:func:`consilium.synthetic.ct.main`)."""

import sys

from consilium.synthetic.ct import main

sys.exit(main())
