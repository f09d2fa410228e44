"""BitLens' app layer: flows and studies that string the libraries (model <- hw <- sim <- explain)
together. Nothing below imports it."""
