"""``lkgan studio``: a local web page that edits generated images through their latent keypoints.

The page only sends edit operations (the ``ops.json`` entries of ``lkgan_jax.editing.recipe``) and shows
the images it gets back; every edit runs on the server with ``lkgan_jax.editing`` and the generator's
jitted eval-mode render (docs/studio.md).

  engine.py    the trained generator shared by all pages: serialised renders, seed latents, PNGs
  session.py   one page's edit history (undo/redo), previews and commits
  exports.py   export files (image, keypoints, latent.npz, ops.json) and the export folder
  server.py    the HTTP API and the static page (standard library ``ThreadingHTTPServer``)
"""
