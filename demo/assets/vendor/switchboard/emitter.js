/**
 * A minimal typed event emitter. A listener that throws does not stop the others: the error
 * is rethrown asynchronously so it still reaches the host's error reporting.
 * @module
 */
export class Emitter {
    listeners = new Map();
    /** Adds a listener; returns a function that removes it. */
    on(event, listener) {
        let set = this.listeners.get(event);
        if (!set) {
            set = new Set();
            this.listeners.set(event, set);
        }
        set.add(listener);
        return () => this.off(event, listener);
    }
    /** Adds a listener called at most once. */
    once(event, listener) {
        const off = this.on(event, (data) => {
            off();
            listener(data);
        });
        return off;
    }
    off(event, listener) {
        this.listeners.get(event)?.delete(listener);
    }
    emit(event, data) {
        const set = this.listeners.get(event);
        if (!set)
            return;
        for (const listener of [...set]) {
            try {
                listener(data);
            }
            catch (err) {
                queueMicrotask(() => {
                    throw err;
                });
            }
        }
    }
    listenerCount(event) {
        return this.listeners.get(event)?.size ?? 0;
    }
}
