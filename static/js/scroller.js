// Follows a streaming reply down the thread until the person scrolls up; then offers 'Jump to latest'.
const NEAR_BOTTOM = 48;

export class Scroller {
  constructor(box, button) {
    this.box = box;
    this.button = button;
    this.following = true;
    box.addEventListener("scroll", () => this.onScroll(), { passive: true });
    button.addEventListener("click", () => this.toBottom());
  }

  atBottom() {
    return this.box.scrollHeight - this.box.scrollTop - this.box.clientHeight < NEAR_BOTTOM;
  }

  onScroll() {
    this.following = this.atBottom();
    this.button.hidden = this.following;
  }

  /** Content grew: stay at the bottom if following, else show the button. */
  contentChanged() {
    if (this.following) this.pin();
    else this.button.hidden = false;
  }

  toBottom() {
    this.following = true;
    this.button.hidden = true;
    this.pin();
  }

  pin() {
    this.box.scrollTop = this.box.scrollHeight;
  }
}
