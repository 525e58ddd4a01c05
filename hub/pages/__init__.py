"""The staff pages, one Flask blueprint per area; ``hub.web.create_app`` registers them.

* ``access``    the hub's parts as the app holds them, ``require(role, ...)``, ``audit``
* ``session``   signing in and out (throttled, known-browser cookie), the session check
                before every request, the audit log page
* ``fleet``     the fleet and one device's page
* ``commands``  desired config and commands sent to a device
* ``alerts``    monkey alerts, "I'm on it", a camera's timeline
* ``ingest``    ingest health
* ``models``    model rollouts: the first device's job, self-test and telemetry, push to
                the rest, roll back (admin; only with a model server)
* ``api``       JSON for scripts

Every page module imports ``access`` and nothing else of this package; so do the app pages
that live with their app (``hub.ridership.web``, ``hub.counter.web``).
"""
