"""Pick a module with DJANGO_SETTINGS_MODULE: saastracker.settings.{dev,test,prod}."""
