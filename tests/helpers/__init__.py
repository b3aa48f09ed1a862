"""Helpers shared by the test modules, imported from here and never from another test module.

``services`` and ``faults`` hold service bodies that worker processes import by name
(``call="tests.helpers.services:NAME"``); ``graphs`` builds services and the named topologies;
``engines`` (fixtures), ``processes``, ``projects``, ``observers``, ``schedule`` and ``hostile``
drive and check live runs.
"""
