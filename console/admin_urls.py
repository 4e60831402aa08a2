"""Staff-only admin pages of the console: dashboard, explain/simulate, replay."""

urlpatterns: list = []
