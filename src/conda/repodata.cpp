// placeholder: filled by the conda work
