"""`mailings site`: the calendar site, a static site of every mailing, the blackout periods and holidays.

facts (what the site says of each mailing, read with the checker's loader and the sender's state) ->
months (the days of each month, with what the policy says of them) -> pages (HTML from templates) and
feed (iCalendar). No part of it reads the clock: "now" comes from the command line.
"""
